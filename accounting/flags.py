"""Bit flags on a 15-minute bucket of counter consumption (``intervals_15m.flags``).

A flagged bucket is never silently corrected: the flag says what happened, the quantity says
what was counted, and coverage says how much of the bucket is backed by readings.
"""

FLAG_ROLLOVER = 1  # the counter wrapped at its register width; the wrapped difference was counted
FLAG_BACKWARDS = 2  # a reading below the last good one that did not persist (a glitch): skipped
FLAG_RESET = 4  # the counter dropped and kept counting from the lower value (meter reset or replaced): not counted
FLAG_SPIKE = 8  # a step above the point's plausible maximum rate: skipped or not counted
FLAG_PARTIAL = 16  # readings back less than the whole bucket (gap, start, end, or an uncounted step)

# Coverage below this marks a bucket partial (float sums of shares land a hair under 1).
FULL_COVERAGE = 0.999
