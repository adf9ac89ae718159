"""Bit flags on a 15-minute bucket of counter consumption (``intervals_15m.flags``).

A flagged bucket is never silently corrected: the flag says what happened, the quantity says
what was counted, and coverage says how much of the bucket is backed by readings.
"""

FLAG_ROLLOVER = 1  # the counter wrapped at its register width; the wrapped difference was counted (buckets of the step)
FLAG_BACKWARDS = 2  # a reading below the last good one that did not persist (a glitch): skipped
FLAG_RESET = 4  # the counter dropped and kept counting from the lower value (meter reset or replaced): not counted
FLAG_SPIKE = 8  # a step above the point's plausible maximum rate, or a lone jump taken back: skipped or not counted
FLAG_PARTIAL = 16  # readings back less than the whole bucket (gap, start, end, or an uncounted step)
# ROLLOVER and RESET mark every bucket of the step across the drop, from the one holding the reading
# before it to the one holding the reading after it: whichever the verdict, the same buckets carry
# a flag, so a verdict never changes which buckets are clean (see RATE_WINDOW_BUCKETS).

# Coverage below this marks a bucket partial (float sums of shares land a hair under 1).
FULL_COVERAGE = 0.999

# A counter with no plausible rate configured always accepts a wrap at its register width when the
# wrapped difference is at most this share of the register (the floor: a counter with no history
# still wraps near the top). Beyond it, the counter's own observed rate decides (see below); a
# replaced meter reading near zero after a high value is a reset, not a wrap worth most of a
# register (a uint32 register at scale 0.01 sitting at 30e6 kWh would otherwise count 12.9 GWh).
# With a configured rate, that rate decides (and at most half the register).
ROLLOVER_MAX_SHARE = 1.0 / 16.0

# Without a configured rate, a wrap beyond the floor is accepted when it is at most half the
# register and at most ROLLOVER_RATE_MULTIPLE x the observed rate x max(dt, bucket). The observed
# rate is the largest quantity of a clean bucket (complete, neither ROLLOVER nor RESET) among the
# RATE_WINDOW_BUCKETS buckets before the bucket the step across the drop starts in, per second: the
# highest 15-minute rate of the day before the wrap. 4x: a counter seen at a quarter of the load it
# runs at across the gap (one line of four, a night or a slow day) still wraps, while a replaced
# meter passes for a wrap only when its last reading was within four times its fastest
# observed advance over the elapsed time of the top of its register (bounded, never register-sized).
ROLLOVER_RATE_MULTIPLE = 4.0
RATE_WINDOW_BUCKETS = 96
