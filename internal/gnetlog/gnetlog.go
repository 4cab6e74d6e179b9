// Package gnetlog adapts a zerolog.Logger to gnet's logging interface so
// gnet never writes to stdout on its own.
package gnetlog

import (
	"fmt"

	"github.com/rs/zerolog"
)

// Logger implements gnet's logging.Logger on top of zerolog.
type Logger struct{ L zerolog.Logger }

// Debugf logs at debug level.
func (l Logger) Debugf(format string, args ...any) { l.L.Debug().Msg(fmt.Sprintf(format, args...)) }

// Infof logs at debug level: gnet's info messages are noise for operators.
func (l Logger) Infof(format string, args ...any) { l.L.Debug().Msg(fmt.Sprintf(format, args...)) }

// Warnf logs at warn level.
func (l Logger) Warnf(format string, args ...any) { l.L.Warn().Msg(fmt.Sprintf(format, args...)) }

// Errorf logs at error level.
func (l Logger) Errorf(format string, args ...any) { l.L.Error().Msg(fmt.Sprintf(format, args...)) }

// Fatalf logs at error level; gnet calls it for errors it survives.
func (l Logger) Fatalf(format string, args ...any) { l.L.Error().Msg(fmt.Sprintf(format, args...)) }
