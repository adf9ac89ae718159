"""The metric names carbonwatch's processes export, as Prometheus sees them (counters with
``_total``, histograms with ``_bucket``/``_sum``/``_count``), to check rules and dashboards."""

from __future__ import annotations


def exported_metric_names() -> set[str]:
    from carbonwatch.api.metrics import ApiMetrics
    from carbonwatch.collector.fleet import fleet_gauges
    from carbonwatch.collector.metrics import CollectorMetrics
    from carbonwatch.collector.upload.service import UploadMetrics
    from carbonwatch.edge.metrics import EdgeMetrics

    names = set()
    collector = CollectorMetrics()
    fleet_gauges(collector)  # the gauges collector/fleet.py adds on its first refresh
    for registry in (
        EdgeMetrics().registry,
        collector.registry,
        UploadMetrics().registry,
        ApiMetrics().registry,
    ):
        for family in registry.collect():
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
            else:
                names.add(family.name)
    return names
