"""The BentoML service for ferops (`bentoml serve serving.service:EmotionService`)."""
