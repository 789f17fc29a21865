"""The chanctl daemon: durable channels on local disk, served over Durable Streams HTTP.

Installed as ``chanctl.daemon`` (the folder is ``daemon/``); never import it as ``daemon``.
"""
