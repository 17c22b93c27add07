"""Load generation and measurement: ``kvbox bench`` and ``kvbox loadgen``.

Layer: bench. Rules: talks to a server only over its public protocol (GW-KV on TCP), never
imports server or storage code; pure parts (``stats``, ``workload``, ``address``) have no
I/O so they are unit-tested directly; every load loop is bounded in operations and time.

Modules: ``runner`` (processes, INFO snapshots, merging), ``worker`` (one event loop per
process, the hot loops), ``workload`` (pre-encoded requests, reply scanner), ``stats``
(percentiles, histograms, timelines), ``serverinfo`` (INFO, populate), ``plot``
(matplotlib, optional), ``loadgen`` (steady load for client pods and soak tests).
"""
