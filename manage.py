#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "payments_project.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings
    except ImproperlyConfigured as exc:
        # Django would go on without them and fail later with an unrelated error
        # ("Models aren't loaded yet" from makemigrations, say), hiding this one.
        sys.exit(f"manage.py: the settings refuse to load: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
