"""Storage engines behind one interface (``base.ChannelStore``)."""
