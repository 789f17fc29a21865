"""The NATS JetStream engine: channels shared by every daemon on one NATS cluster.

Mapping (the README's "NATS JetStream backend" section says the same for users):

* channel -> one JetStream stream ``<ns>_ch_<random>`` on subject ``chanctl.<ns>.c.<random>``
  (a fresh stream per incarnation, so a deleted and re-created name never mixes records);
* catalog -> KV bucket ``<ns>_chanctl``: ``c.<hex name>`` -> stream + meta.json (config,
  soft-deleted flag, fork references); ``k.<stream>`` -> producer checkpoint;
* cursors and run producers -> KV bucket ``<ns>_chanctl_side`` (``sidetable.py``), so every
  daemon sees the same read positions and the same producer liveness;
* append batches -> records: one JetStream message carries one or more whole batches, its
  state in a JSON header (``records.py``), published with ``Nats-Expected-Last-Sequence`` and a
  unique ``Nats-Msg-Id``;
* offsets -> each record names its first offset; stream sequences count records;
* live tail -> a headers-only ordered consumer per open channel;
* retention -> the daemon purges whole records from the front (``retention.py``).

nats-py is imported only inside functions: without the ``chanctl[nats]`` extra the daemon still
imports (and serves the local engine); asking for ``--store nats://...`` then says what to
install.
"""

from .engine import NatsStore, RecordTooLarge

__all__ = ["NatsStore", "RecordTooLarge"]
