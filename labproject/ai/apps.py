from django.apps import AppConfig


class AiConfig(AppConfig):
    name = "labproject.ai"
    label = "ai"
    verbose_name = "AI features"
