"""The log pipe shared by ``em caffe`` and ``em mxnet``: a training's output passed through
to stdout byte for byte while a recorder reads a copy into a run.

* :mod:`.passthrough`: the pass-through process (forked before em is even loaded);
* :mod:`.stream`: the recorder's side: the copy read into a sink, signals, the outcome;
* :mod:`.command`: the command (options, run creation, console.log, exit codes);
* :mod:`.ending`: how the run ends (one status mapping for every log command);
* :mod:`.values`: what parsers and recorders share (numbers as logs print them, files a
  log names copied into an output artifact).

A framework contributes only its parser and its recorder (``integrations.caffe``,
``integrations.mxnet_log``). Nothing is imported here: ``em caffe`` loads only
:mod:`.passthrough` before the log flows.
"""
