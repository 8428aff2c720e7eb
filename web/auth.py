"""The login and logout routes, and the dependencies that read the session.

``Auth`` puts ``web.sessions`` on the web: GET and POST /login, POST /logout,
and dependencies that read the session cookie (``Auth.current_user`` is
Gradio's auth dependency). State-changing routes require the session's CSRF
token back in a header or a form field.
"""

from __future__ import annotations

import hmac
import html
import string
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from pipeline.storage import Store
from web.accounts import NAME_MAX_CHARS, normalize_name
from web.sessions import (
    SESSION_LIFETIME_S,
    LoginThrottledError,
    active_session,
    authenticate,
    create_session,
    end_session,
    session_user,
)

SESSION_COOKIE = "pd_session"
CSRF_COOKIE = "pd_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
DEFAULT_NEXT = "/app/"
WRONG_CREDENTIALS = "Fel användarnamn eller lösenord."
NOT_SIGNED_IN = "Du är inte inloggad. Logga in först."
STALE_PAGE = "Sidan är för gammal. Ladda om den och försök igen."

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOGIN_PAGE = string.Template(
    (Path(__file__).with_name("login.html")).read_text(encoding="utf-8")
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class Auth:
    """The login routes and the session dependencies, over one store.

    ``router`` holds GET /login, POST /login and POST /logout. The methods are
    dependencies: ``current_user`` (also Gradio's ``auth_dependency``),
    ``require_user`` for API routes and ``require_csrf`` for changes. Nothing
    is cached: every call reads the session table, so a logout or an expiry
    takes effect at the very next request.
    """

    def __init__(self, store: Store, *, secure_cookies: bool) -> None:
        self.store = store
        self.secure_cookies = secure_cookies
        self.router = APIRouter()
        self.router.add_api_route("/login", self._show_login, methods=["GET"])
        self.router.add_api_route("/login", self._login, methods=["POST"])
        self.router.add_api_route("/logout", self._logout, methods=["POST"])

    def current_user(self, request: Request) -> str | None:
        """The signed-in user, or None; one indexed read, cheap on every request."""
        return session_user(self.store, request.cookies.get(SESSION_COOKIE))

    def require_user(self, request: Request) -> str:
        """The signed-in user; 401 when there is none."""
        user = self.current_user(request)
        if user is None:
            raise HTTPException(status_code=401, detail=NOT_SIGNED_IN)
        return user

    async def require_csrf(self, request: Request) -> str:
        """The signed-in user of a state-changing request; 401, or 403 without CSRF.

        The session's CSRF token must come back in the ``X-CSRF-Token`` header
        or, from an HTML form, in the ``csrf_token`` field. GET, HEAD and
        OPTIONS change nothing and need only the session.
        """
        session = active_session(self.store, request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise HTTPException(status_code=401, detail=NOT_SIGNED_IN)
        if request.method in SAFE_METHODS:
            return session["user_name"]

        sent = request.headers.get(CSRF_HEADER) or await _form_token(request)
        if not hmac.compare_digest(sent.encode(), session["csrf_token"].encode()):
            raise HTTPException(status_code=403, detail=STALE_PAGE)
        return session["user_name"]

    def _show_login(
        self, request: Request, next_path: Annotated[str, Query(alias="next")] = ""
    ) -> Response:
        target = safe_next(next_path, _default_next(request))
        if self.current_user(request) is not None:
            return RedirectResponse(target, status_code=303)
        return login_page(target)

    # A plain def: FastAPI runs it in a thread, so argon2 never blocks the loop.
    def _login(
        self,
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        next_path: Annotated[str, Form(alias="next")] = "",
    ) -> Response:
        target = safe_next(next_path, _default_next(request))
        client = request.client.host if request.client else "okänd"
        try:
            accepted = authenticate(self.store, username, password, client=client)
        except LoginThrottledError as exc:
            page = login_page(target, username, exc.message, status_code=exc.status)
            page.headers["Retry-After"] = str(exc.retry_after_s)
            return page
        if not accepted:
            return login_page(target, username, WRONG_CREDENTIALS, status_code=401)

        end_session(self.store, request.cookies.get(SESSION_COOKIE))
        token, csrf_token = create_session(self.store, normalize_name(username))
        response = RedirectResponse(target, status_code=303)
        for name, value, http_only in (
            (SESSION_COOKIE, token, True),
            (CSRF_COOKIE, csrf_token, False),
        ):
            response.set_cookie(
                name,
                value,
                max_age=SESSION_LIFETIME_S,
                path="/",
                secure=self.secure_cookies,
                httponly=http_only,
                samesite="lax",
            )
        return response

    async def _logout(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        # A session that has already ended has nothing left to protect.
        if active_session(self.store, token) is not None:
            await self.require_csrf(request)
            end_session(self.store, token)

        root = str(request.scope.get("root_path", ""))
        response = RedirectResponse(root + "/login", status_code=303)
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(
                name, path="/", secure=self.secure_cookies, httponly=http_only
            )
        return response


def make_auth_router(store: Store, *, secure_cookies: bool) -> APIRouter:
    """GET /login, POST /login and POST /logout; ``Auth`` has the dependencies."""
    return Auth(store, secure_cookies=secure_cookies).router


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """``target`` if it is a path on this site, else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    # Browsers read a backslash as a slash and drop tabs and newlines, which
    # would turn "/\evil.example" into another site.
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def login_page(
    target: str, username: str = "", error: str = "", *, status_code: int = 200
) -> HTMLResponse:
    """The login form, with an error message above it when there is one."""
    shown = f'<p class="fel" role="alert">{html.escape(error)}</p>' if error else ""
    body = LOGIN_PAGE.substitute(
        error=shown,
        next=html.escape(target),
        username=html.escape(username[: NAME_MAX_CHARS + 1]),
    )
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _default_next(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + DEFAULT_NEXT


async def _form_token(request: Request) -> str:
    # Only forms are read here: any other body (an upload the route streams
    # itself) must stay unread, so such a request has to send the header.
    kind = request.headers.get("content-type", "")
    if not kind.startswith(("application/x-www-form-urlencoded", "multipart/")):
        return ""
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else ""
