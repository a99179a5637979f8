"""requests authentication for Microsoft Power Platform APIs."""

__all__: list[str] = []
