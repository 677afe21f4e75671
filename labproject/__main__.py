"""`python -m labproject` is this project's manage.py."""

import os
import sys

from django.core.management import execute_from_command_line

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labproject.settings")
execute_from_command_line(["python -m labproject", *sys.argv[1:]])
