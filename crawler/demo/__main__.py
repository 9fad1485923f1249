"""Run the demo mall: `python -m crawler.demo [--out DIR]` builds it and serves it until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from crawler.demo.server import DemoMall
from pipeline.config import load_settings

logger = logging.getLogger("crawler.demo")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m crawler.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=None,
                        help="build folder (default: <COPYWATCH_HOME>/demo-mall)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = args.out or load_settings().home / "demo-mall"
    with DemoMall(out) as mall:
        for slug, url in mall.base_urls.items():
            logger.info("%s: %s/  (robots: %s/robots.txt)", slug, url, url)
        rules = out / "generic_shops.yaml"
        rules.write_text(mall.platform_shops.generic_rules(), encoding="utf-8")
        logger.info("generic shop rules: %s (set COPYWATCH_GENERIC_SHOPS to it); Smartstore starts at /demostore", rules)
        logger.info("client %s gallery: %s", mall.manifest["client"]["slug"], out / "gallery")
        logger.info("serving; press Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            logger.info("stopping")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
