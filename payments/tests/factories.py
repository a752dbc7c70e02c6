from decimal import Decimal

import factory

from payments import services
from payments.models import APIKey, Customer, Merchant, Payment


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    name = factory.Sequence(lambda n: f"Shop {n}")


class APIKeyFactory(factory.django.DjangoModelFactory):
    """Issues keys through the real service; the raw key is on `.raw_key`."""

    class Meta:
        model = APIKey

    merchant = factory.SubFactory(MerchantFactory)
    kind = APIKey.Kind.SECRET
    livemode = False

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        api_key, raw_key = services.api_key_create(**kwargs)
        api_key.raw_key = raw_key
        return api_key


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    merchant = factory.SubFactory(MerchantFactory)
    external_id = factory.Sequence(lambda n: f"user-{n}")
    email = factory.LazyAttribute(lambda o: f"{o.external_id}@example.com")
    name = factory.Faker("name")


class PaymentFactory(factory.django.DjangoModelFactory):
    """A payment row as the API would store it, without dispatching its checkout."""

    class Meta:
        model = Payment

    merchant = factory.SubFactory(MerchantFactory)
    amount = Decimal("599.00")
    currency = "RUB"
    provider = "sandbox"
