"""Framework integrations for em: one module per framework, each importing only its own.

``integrations.keras``, ``integrations.torch``, ``integrations.lightning``,
``integrations.mxnet`` and ``integrations.caffe``; nothing is imported here.
"""
