"""int8 post-training quantization (ONNX Runtime QDQ) and the project's int8 executor of a QDQ model, whose
conv/dense layers run in integers on numpy or on the simulated machine. Imports `machine`, never `study`.
"""
