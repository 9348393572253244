"""Price sources: where raw daily bars come from (synthetic, CSV files, offline sample data)."""

from marketpulse_pipeline.sources.base import PriceSource
from marketpulse_pipeline.sources.csv_files import CsvSource, PriceFileError
from marketpulse_pipeline.sources.sample import SampleSource
from marketpulse_pipeline.sources.synthetic import SyntheticSource

__all__ = ["CsvSource", "PriceFileError", "PriceSource", "SampleSource", "SyntheticSource"]
