"""Profiles (用户画像): computed traits, tags and behaviour analysis."""
