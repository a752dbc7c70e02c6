from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook

from payments import signing


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=3)), timezone(timedelta(hours=-7))])
def test_any_standard_webhooks_receiver_verifies_our_signature(tz):
    secret = signing.webhook_secret_generate()
    body = '{"id":"evt_1","type":"payment.succeeded"}'

    headers = signing.webhook_headers(secret, "evt_1", body, at=datetime.now(tz))

    assert Webhook(secret).verify(body, headers) == {"id": "evt_1", "type": "payment.succeeded"}


def test_a_wrong_secret_or_changed_body_fails_verification():
    secret = signing.webhook_secret_generate()
    headers = signing.webhook_headers(secret, "evt_1", '{"a":1}')

    with pytest.raises(signing.SignatureError):
        signing.webhook_verify(signing.webhook_secret_generate(), b'{"a":1}', headers)
    with pytest.raises(signing.SignatureError):
        signing.webhook_verify(secret, b'{"a":2}', headers)
    assert signing.webhook_verify(secret, b'{"a":1}', headers) == {"a": 1}


def test_secrets_look_like_standard_webhooks_secrets():
    secret = signing.webhook_secret_generate()

    assert secret.startswith("whsec_")
    assert secret != signing.webhook_secret_generate()
    assert signing.webhook_secret_derive("k", "sandbox") == signing.webhook_secret_derive(
        "k", "sandbox"
    )
