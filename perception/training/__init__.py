"""The project's own training code for the tiny embedded-default models (needs torch).

``python -m multimodal_perception.perception.training.train_all`` renders frames from the
synthetic world, trains the detector and the segmenter on CPU, exports both to ONNX into
``models/`` and rewrites their manifests' sha256.
"""
