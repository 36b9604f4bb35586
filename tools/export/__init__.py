"""The export step: a query encoder's torch module (``tools.train.student``) -> the runtime's INT8 ONNX folder
(``query_encoder``), and a finished training run's student -> that folder (``run``). ``python -m tools.export``."""
