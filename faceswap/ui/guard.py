"""Who may talk to `faceswap ui`: only its own page. Every request needs a known Host (against DNS rebinding) and
the per-launch token (a cookie set by the page, or a header); a request from another origin is refused, and one
that changes state (or opens the event stream) must show the page's own origin. Every response says how a
browser may use it (no framing, no sniffing). An ASGI middleware, so it wraps the event stream too."""
from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from urllib.parse import parse_qs, urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")
HEADER = "x-faceswap-token"
SAFE = ("GET", "HEAD")
BODY_TYPES = {"/api/upload": "application/octet-stream"}  # every other state change takes application/json
# 'unsafe-eval': the page evals nothing, but browser automation (Playwright's wait_for_function) evaluates strings
PAGE_CSP = ("default-src 'self'; script-src 'sha256-{script}' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"same-origin"), (b"cross-origin-resource-policy", b"same-origin")]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    return f"faceswap-ui-{port}"  # cookies ignore the port: two pages on two ports keep their own


def host_port(value: str, scheme: str = "http") -> tuple[str, int] | None:
    """(host, port) of a Host header or an origin's netloc, lower case and without brackets; None if malformed."""
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.path:
        return None
    return parts.hostname.lower(), port


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin or Referer; None for `null`, opaque or malformed values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    found = host_port(parts.netloc, parts.scheme)
    return found and (parts.scheme, *found)


class Guard:
    def __init__(self, app, token: str, host: str | None = None):
        self.app, self.token = app, token
        self.hosts = {h.strip("[]").lower() for h in (*LOOPBACK, host or "")} - {""}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope)
        extra = list(HEADERS)
        if scope["path"] == "/" and not refusal and self.query_token(scope):
            # the page swaps the URL's token for a cookie no script reads (HttpOnly) and no other site sends
            name = cookie_name(scope["server"][1] if scope.get("server") else 0)
            extra.append((b"set-cookie", f"{name}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        if refusal:
            status, line = refusal
            body = json.dumps({"error": line}).encode()
            await send_with_headers({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            return await send_with_headers({"type": "http.response.body", "body": body})
        await self.app(scope, receive, send_with_headers)

    def query_token(self, scope) -> bool:
        given = parse_qs(scope.get("query_string", b"").decode(errors="replace")).get("token", [""])[0]
        return hmac.compare_digest(given.encode(), self.token.encode())

    def refusal(self, scope) -> tuple[int, str] | None:
        """(status, one line) when the request is not from the page itself, else None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scheme, server = scope.get("scheme", "http"), scope.get("server") or ("", 80)
        own = host_port(headers.get("host", ""), scheme)
        if own is None or own[1] != server[1] or not self.known_host(own[0], server[0]):
            return 403, "unknown Host header: open the page at the address faceswap ui printed"
        origin = headers.get("origin")
        if origin is not None and origin_of(origin) != (scheme, *own):
            return 403, "request from another origin refused"
        if headers.get("sec-fetch-site") in ("same-site", "cross-site") and headers.get("sec-fetch-dest") != "document":
            return 403, "request from another site refused"  # e.g. a <video> or <iframe> on another local port
        cookies = dict(c.strip().split("=", 1) for c in headers.get("cookie", "").split(";") if "=" in c)
        cookie = cookies.get(cookie_name(server[1]), "")
        given = headers.get(HEADER) or cookie
        if not hmac.compare_digest(given.encode(), self.token.encode()) and not (
                scope["path"] == "/" and self.query_token(scope)):
            return 403, "missing or wrong token: open the URL with ?token= that faceswap ui printed"
        if scope["method"] not in SAFE or scope["path"] == "/api/events":
            source = origin or headers.get("referer")
            if source is None or origin_of(source) != (scheme, *own):
                return 403, "state-changing request without this page's Origin refused"
        if scope["method"] not in SAFE:
            wanted = BODY_TYPES.get(scope["path"], "application/json")
            if headers.get("content-type", "").split(";")[0].strip().lower() != wanted:
                return 415, f"this request needs Content-Type: {wanted}"
        return None

    def known_host(self, host: str, listening: str) -> bool:
        """A loopback name, the --host value, or the literal address the request came in on (never rebound)."""
        if host in self.hosts:
            return True
        try:
            return ipaddress.ip_address(host) == ipaddress.ip_address(listening)
        except ValueError:
            return False
