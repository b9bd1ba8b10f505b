"""htmx helpers: is_htmx(), the Vary header, redirects that htmx follows."""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import redirect
from flask import request


def is_htmx() -> bool:
    """True for htmx swaps; history restores need the full page."""
    h = request.headers
    return (
        h.get("HX-Request") == "true" and h.get("HX-History-Restore-Request") != "true"
    )


def redirect_to(url: str) -> Response:
    """Post/redirect/get for both: a 303 for browsers, HX-Redirect for htmx."""
    if is_htmx():
        response = Response(status=204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)


def init_app(app: Flask) -> None:
    @app.after_request
    def vary_on_htmx(response: Response) -> Response:
        response.vary.add("HX-Request")
        return response
