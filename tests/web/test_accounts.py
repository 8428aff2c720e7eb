"""Accounts as the server uses them: a real SQLite store, real HTTP round trips."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from pipeline.config import Settings
from pipeline.storage import Store
from web import accounts, sessions
from web.auth import Auth, make_auth_router

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "rätt-lösenord"
# The library's default costs about a second per hash on a busy test machine.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)

ClientFactory = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", CHEAP_HASHER)


@pytest.fixture
def anna(store: Store) -> str:
    return accounts.add_user(store, "anna", PASSWORD)


def make_app(store: Store, *, secure_cookies: bool = False) -> FastAPI:
    """The auth router plus one route of each kind the real server has."""
    auth = Auth(store, secure_cookies=secure_cookies)
    app = FastAPI()
    app.include_router(auth.router)

    @app.get("/api/me")
    def me(request: Request) -> dict[str, str | None]:
        return {"user": auth.current_user(request)}

    @app.get("/api/private")
    def private(request: Request) -> dict[str, str]:
        return {"user": auth.require_user(request)}

    @app.post("/api/change", dependencies=[Depends(auth.require_csrf)])
    def change(request: Request) -> dict[str, str]:
        return {"changed_by": auth.require_user(request)}

    return app


@pytest.fixture
def client_for(store: Store) -> Iterator[ClientFactory]:
    """Clients on the test app, optionally from another address or store."""
    opened: list[TestClient] = []

    def factory(
        ip: str = "10.0.0.1",
        *,
        on: Store | None = None,
        cookies: dict[str, str] | None = None,
    ) -> TestClient:
        app = make_app(on or store)
        client = TestClient(
            app, client=(ip, 50000), cookies=cookies, follow_redirects=False
        )
        opened.append(client)
        return client

    yield factory
    for client in opened:
        client.close()


@pytest.fixture
def client(client_for: ClientFactory) -> TestClient:
    return client_for()


def log_in(
    client: TestClient, name: str = "anna", password: str = PASSWORD, **extra: str
) -> Any:  # httpx's or httpx2's Response, whichever TestClient found
    form = {"username": name, "password": password, **extra}
    return client.post("/login", data=form)


def signed_in_as(client: TestClient) -> str | None:
    user: str | None = client.get("/api/me").json()["user"]
    return user


# Users and passwords ------------------------------------------------------------


def test_passwords_are_stored_as_argon2_hashes(store: Store, anna: str) -> None:
    stored = store.query("SELECT password_hash FROM users")[0]["password_hash"]

    assert stored.startswith("$argon2")
    assert PASSWORD not in stored
    assert accounts.verify(store, "anna", PASSWORD)
    assert not accounts.verify(store, "anna", "fel-lösenord")
    assert not accounts.verify(store, "ingen", PASSWORD)


def test_names_are_trimmed_and_counted(store: Store) -> None:
    assert accounts.add_user(store, "  Åsa Öberg ", PASSWORD) == "Åsa Öberg"

    assert accounts.user_exists(store, "Åsa Öberg")
    assert accounts.count_users(store) == 1
    assert accounts.verify(store, " Åsa Öberg", PASSWORD)


@pytest.mark.parametrize(
    ("name", "password", "words"),
    [
        ("", PASSWORD, "1–64 tecken"),
        ("   ", PASSWORD, "1–64 tecken"),
        ("x" * 65, PASSWORD, "1–64 tecken"),
        ("<script>", PASSWORD, "bara innehålla"),
        ("anna", "kort", "minst 8 tecken"),
    ],
)
def test_bad_names_and_short_passwords_are_refused_in_swedish(
    store: Store, name: str, password: str, words: str
) -> None:
    with pytest.raises(accounts.AccountError, match=words) as caught:
        accounts.add_user(store, name, password)

    assert caught.value.status == 400
    assert accounts.count_users(store) == 0


def test_a_name_can_be_taken_once(store: Store, anna: str) -> None:
    with pytest.raises(accounts.AccountError, match="finns redan"):
        accounts.add_user(store, "anna", "ett-annat-lösenord")


def test_a_hash_is_upgraded_when_the_parameters_change(
    store: Store, anna: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stronger = PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(accounts, "PASSWORD_HASHER", stronger)

    assert accounts.verify(store, "anna", PASSWORD)

    stored = store.query("SELECT password_hash FROM users")[0]["password_hash"]
    assert ",t=2," in stored
    assert accounts.verify(store, "anna", PASSWORD)


def test_a_new_password_ends_every_session(store: Store, anna: str) -> None:
    token, _ = sessions.create_session(store, "anna")

    accounts.set_password(store, "anna", "nytt-lösenord")

    assert sessions.session_user(store, token) is None
    assert accounts.verify(store, "anna", "nytt-lösenord")
    assert not accounts.verify(store, "anna", PASSWORD)


def test_first_start_creates_one_admin_with_a_random_password(store: Store) -> None:
    password = accounts.ensure_admin(store, None)

    assert password is not None and len(password) >= 8
    assert accounts.ensure_admin(store, None) is None
    assert [(u.name, u.is_admin) for u in accounts.list_users(store)] == [
        ("admin", True)
    ]
    assert accounts.verify(store, "admin", password)


def test_first_start_takes_the_admin_password_from_the_environment(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "data") as store:
        with pytest.raises(accounts.AccountError, match="PD_ADMIN_PASSWORD"):
            accounts.ensure_admin(store, "kort")

        assert accounts.ensure_admin(store, "från-miljön") is None
        assert accounts.verify(store, "admin", "från-miljön")


# Sessions -----------------------------------------------------------------------


def test_login_sets_cookies_that_survive_a_restart(
    settings: Settings, client: TestClient, client_for: ClientFactory, anna: str
) -> None:
    response = log_in(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/app/"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    assert "HttpOnly" in cookies["pd_session"]
    assert "HttpOnly" not in cookies["pd_csrf"]
    for cookie in cookies.values():
        assert "samesite=lax" in cookie.lower() and "Path=/" in cookie
        assert "Secure" not in cookie

    with Store(settings.data_dir) as restarted:
        again = client_for(on=restarted, cookies=dict(response.cookies))
        assert signed_in_as(again) == "anna"
        assert again.get("/api/private").json() == {"user": "anna"}


def test_secure_cookies_are_marked_secure(store: Store, anna: str) -> None:
    app = make_app(store, secure_cookies=True)
    with TestClient(
        app, base_url="https://testserver", follow_redirects=False
    ) as client:
        response = log_in(client)

    for cookie in response.headers.get_list("set-cookie"):
        assert "Secure" in cookie


def test_tokens_are_stored_only_as_hashes(
    store: Store, client: TestClient, anna: str
) -> None:
    token = log_in(client).cookies["pd_session"]

    rows = store.query("SELECT * FROM sessions")
    assert len(rows) == 1
    assert token not in rows[0].values()
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()


def test_wrong_password_shows_the_form_again(client: TestClient, anna: str) -> None:
    response = log_in(client, password="fel-lösenord")

    assert response.status_code == 401
    assert "Fel användarnamn eller lösenord." in response.text
    assert 'value="anna"' in response.text
    assert "set-cookie" not in response.headers
    assert signed_in_as(client) is None


def test_logout_ends_the_session(client: TestClient, anna: str) -> None:
    response = log_in(client)
    token, csrf = response.cookies["pd_session"], response.cookies["pd_csrf"]

    out = client.post("/logout", data={"csrf_token": csrf})

    assert out.status_code == 303
    assert out.headers["location"] == "/login"
    assert signed_in_as(client) is None
    client.cookies.set("pd_session", token)
    assert signed_in_as(client) is None
    assert client.get("/api/private").status_code == 401


def test_an_expired_session_is_rejected_and_removed(
    store: Store, client: TestClient, anna: str
) -> None:
    log_in(client)
    with store.transaction() as conn:
        conn.execute("UPDATE sessions SET expires_at = ?", (time.time() - 1,))

    assert signed_in_as(client) is None
    assert store.query("SELECT * FROM sessions") == []


# CSRF ---------------------------------------------------------------------------


def test_changes_need_the_sessions_csrf_token(client: TestClient, anna: str) -> None:
    csrf = log_in(client).cookies["pd_csrf"]

    assert client.post("/api/change").status_code == 403
    assert client.post("/api/change", headers={"X-CSRF-Token": "x"}).status_code == 403
    assert client.post("/api/change", data={"csrf_token": "x"}).status_code == 403
    by_header = client.post("/api/change", headers={"X-CSRF-Token": csrf})
    by_form = client.post("/api/change", data={"csrf_token": csrf})
    assert by_header.json() == by_form.json() == {"changed_by": "anna"}


def test_another_sessions_csrf_token_is_refused(
    client: TestClient, client_for: ClientFactory, anna: str
) -> None:
    log_in(client)
    other_csrf = log_in(client_for()).cookies["pd_csrf"]

    refused = client.post("/api/change", headers={"X-CSRF-Token": other_csrf})

    assert refused.status_code == 403
    assert "Ladda om" in refused.json()["detail"]


def test_logout_without_csrf_is_refused(client: TestClient, anna: str) -> None:
    log_in(client)

    assert client.post("/logout").status_code == 403
    assert signed_in_as(client) == "anna"


def test_changes_without_a_session_are_unauthorized(client: TestClient) -> None:
    assert client.post("/api/change", headers={"X-CSRF-Token": "x"}).status_code == 401


# Rate limiting ------------------------------------------------------------------


def test_the_sixth_attempt_on_a_name_is_refused_even_with_the_right_password(
    client: TestClient, client_for: ClientFactory, store: Store, anna: str
) -> None:
    accounts.add_user(store, "bertil", PASSWORD)
    for _ in range(5):
        assert log_in(client, password="fel-lösenord").status_code == 401

    refused = log_in(client)
    from_elsewhere = log_in(client_for("10.0.0.2"))

    assert refused.status_code == from_elsewhere.status_code == 429
    assert "Försök igen om 15 minuter." in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "set-cookie" not in refused.headers
    assert log_in(client, "bertil").status_code == 303


def test_an_address_with_twenty_failures_is_refused(
    client: TestClient, client_for: ClientFactory, anna: str
) -> None:
    for n in range(20):
        assert log_in(client, f"gissning{n}", "fel-lösenord").status_code == 401

    assert log_in(client).status_code == 429
    assert log_in(client_for("10.0.0.2")).status_code == 303


def test_a_successful_login_clears_the_names_failures(
    client: TestClient, anna: str
) -> None:
    for _ in range(2):
        for _ in range(4):
            assert log_in(client, password="fel-lösenord").status_code == 401
        assert log_in(client).status_code == 303


# Redirects and the page ---------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "javascript:alert(1)",
        "evil.example",
    ],
)
def test_next_never_leaves_the_site(client: TestClient, anna: str, target: str) -> None:
    page = client.get("/login", params={"next": target})
    response = log_in(client, next=target)

    assert "evil" not in page.text
    assert response.headers["location"] == "/app/"


def test_a_local_next_is_followed(client: TestClient, anna: str) -> None:
    response = log_in(client, next="/app/?vy=2")

    assert response.headers["location"] == "/app/?vy=2"
    assert client.get("/login").headers["location"] == "/app/"


def test_the_login_page_is_swedish_and_self_contained(client: TestClient) -> None:
    page = client.get("/login", params={"next": "/app/"})

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="sv">' in page.text and "Logga in" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_gradio_sees_the_session_and_the_logout(store: Store, anna: str) -> None:
    gr = pytest.importorskip("gradio")
    # The factory's router alone; a second ``Auth`` on the same store sees the
    # same sessions because nothing is cached.
    app = FastAPI()
    app.include_router(make_auth_router(store, secure_cookies=False))
    with gr.Blocks() as blocks:
        gr.Markdown("PedagogiskDialog")
    auth = Auth(store, secure_cookies=False)
    gr.mount_gradio_app(app, blocks, path="/app", auth_dependency=auth.current_user)
    client = TestClient(app, follow_redirects=False)

    assert client.get("/app/config").status_code == 401
    response = log_in(client)
    token, csrf = response.cookies["pd_session"], response.cookies["pd_csrf"]
    assert client.get("/app/config").status_code == 200
    client.post("/logout", headers={"X-CSRF-Token": csrf})
    client.cookies.set("pd_session", token)
    assert client.get("/app/config").status_code == 401
    client.close()


# The command line ---------------------------------------------------------------


def run_cli(
    settings: Settings, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.accounts", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PD_DATA_DIR": str(settings.data_dir)},
        timeout=60,
    )


def test_the_cli_adds_and_lists_users(settings: Settings, store: Store) -> None:
    added = run_cli(settings, "add-user", "cecilia", "--admin", stdin=PASSWORD + "\n")
    listed = run_cli(settings, "list-users")

    assert added.returncode == 0, added.stderr
    assert listed.stdout.startswith("cecilia\tadmin\t")
    assert accounts.verify(store, "cecilia", PASSWORD)


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["add-user", "david"], "kort\n", "minst 8 tecken"),
        (["add-user", "anna"], PASSWORD + "\n", "finns redan"),
        (["set-password", "ingen"], PASSWORD + "\n", "finns inte"),
        (["add-user", "a<b"], PASSWORD + "\n", "bara innehålla"),
    ],
)
def test_the_cli_reports_errors_in_one_swedish_line(
    settings: Settings,
    store: Store,
    anna: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    stdin: str,
    words: str,
) -> None:
    # In-process: a subprocess per case would cost seconds of imports each.
    monkeypatch.setenv("PD_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))

    code = accounts.main(args)

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("fel: ") and err.count("\n") == 1
    assert words in err
    assert accounts.count_users(store) == 1
