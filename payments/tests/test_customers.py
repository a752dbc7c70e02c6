from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import client_for, run_concurrently
from payments.ids import ulid_at
from payments.models import Customer
from payments.tests.factories import APIKeyFactory, CustomerFactory
from payments.tests.test_authentication import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers"


def test_create_customer(api, merchant):
    response = api.post(
        URL,
        {
            "external_id": "user-42",
            "email": "ann@example.com",
            "name": "Ann",
            "metadata": {"plan": "gold"},
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("cus_")
    assert body["object"] == "customer"
    assert body["external_id"] == "user-42"
    assert body["email"] == "ann@example.com"
    assert body["metadata"] == {"plan": "gold"}
    assert body["created_at"].endswith("Z")
    assert Customer.objects.get(pk=body["id"]).merchant == merchant


def test_external_id_is_unique_per_merchant(api, other_api):
    assert api.post(URL, {"external_id": "u1"}, format="json").status_code == 201

    error = assert_error(
        api.post(URL, {"external_id": "u1", "email": "x@example.com"}, format="json"),
        409,
        "resource_exists",
        "invalid_request_error",
    )
    assert error["param"] == "external_id"
    assert Customer.objects.filter(external_id="u1").count() == 1
    # Another merchant may use the same id for its own user.
    assert other_api.post(URL, {"external_id": "u1"}, format="json").status_code == 201


@pytest.mark.parametrize(
    "payload, param",
    [
        ({"external_id": ""}, "external_id"),
        ({"external_id": "x" * 256}, "external_id"),
        ({"external_id": "u", "email": "not-an-email"}, "email"),
        ({"external_id": "u", "metadata": "text"}, "metadata"),
        ({"external_id": "u", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"external_id": "u", "metadata": {"k" * 41: "v"}}, "metadata"),
    ],
)
def test_invalid_customer_input_is_400_and_creates_nothing(api, payload, param):
    response = api.post(URL, payload, format="json")

    error = assert_error(response, 400, response.json()["error"]["code"], "invalid_request_error")
    assert error["code"] in {"parameter_invalid", "parameter_missing"}
    assert error["param"] == param
    assert not Customer.objects.exists()


def test_retrieve_customer(api, merchant):
    customer = CustomerFactory(merchant=merchant)

    response = api.get(f"{URL}/{customer.id}")

    assert response.status_code == 200
    assert response.json()["id"] == customer.id


def test_another_merchants_customer_is_a_404_not_a_403(api, other_merchant):
    theirs = CustomerFactory(merchant=other_merchant)

    error = assert_error(
        api.get(f"{URL}/{theirs.id}"), 404, "resource_missing", "invalid_request_error"
    )
    missing = assert_error(
        api.get(f"{URL}/cus_DOESNOTEXIST"), 404, "resource_missing", "invalid_request_error"
    )
    # Same answer as for an id that never existed, apart from the id itself.
    assert error["message"].replace(theirs.id, "X") == missing["message"].replace(
        "cus_DOESNOTEXIST", "X"
    )


def test_list_shows_only_own_customers(api, merchant, other_merchant):
    mine = CustomerFactory(merchant=merchant)
    CustomerFactory(merchant=other_merchant)

    results = api.get(URL).json()["results"]

    assert [c["id"] for c in results] == [mine.id]


def test_cursor_pagination_walks_every_customer_once_newest_first(api, merchant):
    created = [CustomerFactory(merchant=merchant).id for _ in range(25)]

    seen, url, pages = [], f"{URL}?limit=10", 0
    while url:
        body = api.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        seen += [c["id"] for c in body["results"]]
        url, pages = body["next"], pages + 1

    assert pages == 3
    assert seen == list(reversed(created))


def test_filters(api, merchant):
    three_days_ago = timezone.now() - timedelta(days=3)
    old = CustomerFactory(
        merchant=merchant,
        id=f"cus_{ulid_at(three_days_ago)}",
        external_id="a",
        email="Ann@Example.com",
    )
    new = CustomerFactory(merchant=merchant, external_id="b", email="bob@example.com")

    def ids(query):
        return [c["id"] for c in api.get(f"{URL}?{query}").json()["results"]]

    assert ids("external_id=a") == [old.id]
    assert ids("email=ann@example.com") == [old.id]
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"created_gte={since}") == [new.id]
    assert ids(f"created_lte={since}") == [old.id]


@pytest.mark.parametrize(
    "query, param",
    [
        ("created_gte=yesterday", "created_gte"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=garbage", "cursor"),
    ],
)
def test_bad_list_parameters_are_400(api, query, param):
    error = assert_error(
        api.get(f"{URL}?{query}"), 400, "parameter_invalid", "invalid_request_error"
    )
    assert error["param"] == param


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_external_id_make_one_customer(merchant):
    """Two requests racing past the existence check: the constraint decides, cleanly."""
    raw_key = APIKeyFactory(merchant=merchant).raw_key

    statuses = run_concurrently(
        8,
        lambda: client_for(raw_key).post(URL, {"external_id": "racer"}, format="json").status_code,
    )

    assert sorted(statuses) == [201] + [409] * 7
    assert Customer.objects.filter(merchant=merchant, external_id="racer").count() == 1
