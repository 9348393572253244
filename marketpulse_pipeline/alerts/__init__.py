"""The layer a person acts on: calibrated signals, their combination, and the alert flag.

Pure (DataFrame in, DataFrame out), like the detectors: `signals` measures each symbol-session,
`detectors.calibration` turns each measure into a tail probability against the symbol's own
past, and `decision` combines them into one probability and the rare `is_alert` flag.
"""
