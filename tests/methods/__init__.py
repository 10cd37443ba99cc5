import pytest

# Asserts inside the shared helpers get pytest's detailed failure messages too.
pytest.register_assert_rewrite("tests.methods.helpers")
