"""The ``proxy`` subresource: request forwarding, upgrade splice, pools and upstream dialers."""

__all__: list[str] = []
