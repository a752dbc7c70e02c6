import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_openapi_schema_lists_the_api(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/customers" in schema["paths"]
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_swagger_ui_serves_its_assets_locally(client):
    page = client.get("/api/docs/").content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    assert not [s for s in sources if s.startswith(("http://", "https://", "//"))]
    script = next(s for s in sources if s.endswith("swagger-ui-bundle.js"))
    assert client.get(script).status_code == 200


def _manage(*args, **env_overrides):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))
    }
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_check_is_clean_with_production_settings():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="payments.example.com",
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("command", [["check"], ["makemigrations", "--check", "--dry-run"]])
def test_refuses_to_start_without_a_secret_key_when_debug_is_off(command):
    result = _manage(*command, DEBUG="false", SECRET_KEY="")

    assert result.returncode != 0
    # Said plainly, not buried under the error of whatever Django tried next.
    assert result.stderr.strip() == (
        "manage.py: the settings refuse to load: SECRET_KEY must be set when DEBUG is off."
    )
