"""Telling people: the notifier seam (`notifier`), the channels built from the configuration
(`registry`, `channels/`) and the outbox that sends for every channel, crash-safe (`outbox`)."""
