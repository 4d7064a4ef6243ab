"""The server: a FastAPI app over the stage facades (``jingzhun serve``)."""

from jingzhun.api.app import create_app

__all__ = ["create_app"]
