"""Spiders: navigate shops and extract product pages; storage lives in the item pipelines."""
