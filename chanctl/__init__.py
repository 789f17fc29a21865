"""chanctl: durable, named channels for long-running processes."""

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .aclient import AsyncClient
    from .client import Client
    from .protocol import Message

__all__ = ["AsyncClient", "Client", "Message", "__version__"]


def __getattr__(name: str) -> object:
    """Load the clients on first use: ``import chanctl`` stays cheap for the CLI, and
    aiohttp is imported only by programs that ask for ``chanctl.AsyncClient``."""
    if name == "Client":
        from .client import Client

        return Client
    if name == "AsyncClient":
        from .aclient import AsyncClient

        return AsyncClient
    if name == "Message":
        from .protocol import Message

        return Message
    raise AttributeError(f"module 'chanctl' has no attribute {name!r}")
