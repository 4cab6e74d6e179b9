package bench

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// NewProgressBar returns a Config.Progress that draws a progress bar per
// phase on w, a terminal: by operations when the phase has a count, by
// time otherwise, with the current rate. The bar is cleared when its phase
// ends so the report starts on a clean line.
func NewProgressBar(w io.Writer) func(Progress) {
	var (
		bar   *progressbar.ProgressBar
		phase string
	)
	return func(p Progress) {
		if bar == nil || p.Phase != phase {
			phase = p.Phase
			max, opts := p.Total, []progressbar.Option{
				progressbar.OptionSetWriter(w),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100 * time.Millisecond),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionSetElapsedTime(true),
			}
			if max == 0 { // bounded by time: count milliseconds
				// (No predicted time: the bar knows it, and rounded to
				// seconds from its own start it read [0s:0s] at 45 %
				// of a 2 s run.)
				max = p.Duration.Milliseconds()
			} else {
				opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true))
			}
			bar = progressbar.NewOptions64(max, opts...)
		}
		rate := 0.0
		if s := p.Elapsed.Seconds(); s > 0 {
			rate = float64(p.Ops) / s
		}
		desc := fmt.Sprintf("%-7s %s ops/s", p.Phase, FormatRate(rate))
		if p.Errors > 0 {
			desc += fmt.Sprintf(", %d errors", p.Errors)
		}
		bar.Describe(desc)
		if p.Total > 0 {
			_ = bar.Set64(p.Ops)
		} else {
			_ = bar.Set64(min(p.Elapsed.Milliseconds(), bar.GetMax64()))
		}
		if p.Done {
			_ = bar.Finish()
			bar = nil
		}
	}
}
