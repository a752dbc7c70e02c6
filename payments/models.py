from django.db import models
from django.db.models import Q

from payments.ids import PrefixedId


class Merchant(models.Model):
    """A business that takes payments through the platform; owns every other object."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("mer"), editable=False
    )
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(
        default=True, help_text="A disabled merchant's keys are refused with 403."
    )
    default_provider = models.CharField(max_length=20, default="sandbox")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class APIKey(models.Model):
    """
    A credential a client app presents as `Authorization: Bearer <key>`.

    Only a SHA-256 digest of the key is stored: the full key is shown once, when it is
    made. Keys carry about 190 random bits, so a fast hash is enough (as with GitHub
    tokens); there is nothing to brute-force that a slow hash would protect.
    """

    class Kind(models.TextChoices):
        SECRET = "secret", "Secret"
        PUBLISHABLE = "publishable", "Publishable"

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("key"), editable=False
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    livemode = models.BooleanField(default=False)
    name = models.CharField(max_length=100, blank=True)
    # The first characters of the key (`sk_test_AbCd`), enough to recognise it in a list.
    prefix = models.CharField(max_length=24, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["merchant", "-created_at"], name="apikey_merchant_created")]

    def __str__(self):
        return f"{self.prefix}… ({self.get_kind_display()}, {self.merchant_id})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_secret(self) -> bool:
        return self.kind == self.Kind.SECRET


class Customer(models.Model):
    """A buyer, as the merchant's own app knows them (`external_id` is the app's user id)."""

    id = models.CharField(
        primary_key=True, max_length=40, default=PrefixedId("cus"), editable=False
    )
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    name = models.CharField(max_length=255, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "external_id"], name="customer_unique_external_id"
            ),
        ]
        indexes = [
            # The cursor-paginated list walks (merchant, id); email lookups are filters on it.
            models.Index(fields=["merchant", "-id"], name="customer_merchant_id"),
            models.Index(
                fields=["merchant", "email"], name="customer_merchant_email", condition=~Q(email="")
            ),
        ]

    def __str__(self):
        return self.email or self.external_id
