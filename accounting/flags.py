"""Bit flags on a 15-minute bucket of counter consumption (``intervals_15m.flags``).

A flagged bucket is never silently corrected: the flag says what happened, the quantity says
what was counted, and coverage says how much of the bucket is backed by readings.
"""

FLAG_ROLLOVER = 1  # the counter wrapped at its register width; the wrapped difference was counted
FLAG_BACKWARDS = 2  # a reading below the last good one that did not persist (a glitch): skipped
FLAG_RESET = 4  # the counter dropped and kept counting from the lower value (meter reset or replaced): not counted
FLAG_SPIKE = 8  # a step above the point's plausible maximum rate, or a lone jump taken back: skipped or not counted
FLAG_PARTIAL = 16  # readings back less than the whole bucket (gap, start, end, or an uncounted step)

# Coverage below this marks a bucket partial (float sums of shares land a hair under 1).
FULL_COVERAGE = 0.999

# A counter with no plausible rate configured accepts a wrap at its register width only when the
# wrapped difference is at most this share of the register: a replaced meter reading near zero
# after a high value is a reset, not a wrap worth most of a register (a uint32 register at scale
# 0.01 sitting at 30e6 kWh would otherwise count 12.9 GWh). With a rate, the rate decides (and at
# most half the register).
ROLLOVER_MAX_SHARE = 1.0 / 16.0
