"""tlswatch: detect TLS interception and blocking."""

__version__ = "0.1.0"
__all__ = ["__version__"]
