"""The training engine: the epoch loop, fitting a method from its YAML sections, resume, data-parallel workers,
mixed precision and augmentation on tensors. Kedro-free; the training nodes call :func:`dhat.engine.fitting.fit`."""
