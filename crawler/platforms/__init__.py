"""Platform adapters: pure parsing functions over Scrapy responses, one module per platform."""
