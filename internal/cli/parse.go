package cli

import (
	"fmt"
)

// Token is one word of a command line.
type Token struct {
	Text string
	// Quoted reports that the word was written in double quotes. It matters
	// for T's old value: an unquoted (nil) means "absent", a quoted one is
	// the literal five-byte string.
	Quoted bool
}

// SyntaxError is a malformed command line (bad quoting or escape).
type SyntaxError struct {
	Col int // 1-based byte column of the problem
	Msg string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("column %d: %s", e.Col, e.Msg) }

// Tokenize splits one command line into words separated by blanks.
//
// A word starting with a double quote runs to the matching unescaped quote,
// which must end the word; inside it \" \\ \n \t \r \0 and \xHH (one byte,
// two hex digits) are escapes, so any binary value can be typed. Any other
// word is taken literally, backslashes and inner quotes included.
func Tokenize(line string) ([]Token, error) {
	var toks []Token
	i := 0
	for {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			return toks, nil
		}
		if line[i] != '"' {
			j := i
			for j < len(line) && !isBlank(line[j]) {
				j++
			}
			toks = append(toks, Token{Text: line[i:j]})
			i = j
			continue
		}
		tok, next, err := quoted(line, i)
		if err != nil {
			return nil, err
		}
		toks = append(toks, tok)
		i = next
	}
}

// quoted decodes the quoted word starting at line[start] == '"' and returns
// it with the index just past it.
func quoted(line string, start int) (Token, int, error) {
	b := make([]byte, 0, 16)
	i := start + 1
	for {
		if i >= len(line) {
			return Token{}, 0, &SyntaxError{Col: start + 1, Msg: "unterminated quote"}
		}
		c := line[i]
		if c == '"' {
			i++
			break
		}
		if c != '\\' {
			b = append(b, c)
			i++
			continue
		}
		if i+1 >= len(line) {
			return Token{}, 0, &SyntaxError{Col: start + 1, Msg: "unterminated quote"}
		}
		switch e := line[i+1]; e {
		case '"', '\\':
			b = append(b, e)
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case 'r':
			b = append(b, '\r')
		case '0':
			b = append(b, 0)
		case 'x':
			if i+3 >= len(line) || !isHex(line[i+2]) || !isHex(line[i+3]) {
				return Token{}, 0, &SyntaxError{Col: i + 1, Msg: `\x needs two hex digits`}
			}
			b = append(b, unhex(line[i+2])<<4|unhex(line[i+3]))
			i += 2
		default:
			what := `\` + string(rune(e))
			if e < ' ' || e > '~' {
				what = fmt.Sprintf(`\ followed by byte 0x%02x`, e) // keep the message printable
			}
			return Token{}, 0, &SyntaxError{Col: i + 1, Msg: "unknown escape " + what + ` (use \" \\ \n \t \r \0 or \xHH)`}
		}
		i += 2
	}
	if i < len(line) && !isBlank(line[i]) {
		return Token{}, 0, &SyntaxError{Col: i + 1, Msg: "closing quote must be followed by a blank"}
	}
	return Token{Text: string(b), Quoted: true}, i, nil
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
