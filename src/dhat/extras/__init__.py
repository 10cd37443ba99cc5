"""Project extensions of Kedro (custom datasets), named as Kedro's convention has it."""
