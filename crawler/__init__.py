"""Scrapy project: crawls shops (Cafe24 first) and stores pages and original image bytes."""
