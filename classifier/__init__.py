"""How the moderation classifier (core/moderation/classifier.py) is built: its labelled data
and the training of its heads (`make heads`)."""
