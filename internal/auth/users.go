// Package auth is client authentication: users with a role and a bcrypt
// password hash (the config's "user <name> <role> <hash>" lines), a
// Verifier that checks a user's password once per process and then from
// a keyed cache, throttling failed attempts per remote address, and a
// Gate that authenticates the connections of a gnet port with a HELLO
// frame without blocking its event loops.
//
// bcrypt (golang.org/x/crypto/bcrypt) rather than argon2id: its hashes
// are self-describing standard strings ("$2a$12$…", cost and salt
// included) that other tools make and check (htpasswd -B, every
// language's bcrypt library), and a check costs CPU only — argon2id's
// memory-hardness, its strength against GPUs, would cost every server
// tens of MiB per check, and the x/crypto package has no standard
// encoding for its hashes. bcrypt reads at most 72 bytes of a password:
// longer passwords are refused when hashing and never match.
package auth

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// Role is what an authenticated user may do.
type Role uint8

// Roles, each allowing what the one before allows and more.
const (
	RoleNone      Role = iota // not authenticated
	RoleRead                  // GET, the view, the basic status
	RoleReadWrite             // and PUT, DELETE, CAS, APPEND
	RoleAdmin                 // and the status's details, shutdown, future admin commands
)

var roleNames = [...]string{"none", "read", "readwrite", "admin"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// CanWrite reports whether r may change keys.
func (r Role) CanWrite() bool { return r >= RoleReadWrite }

// IsAdmin reports whether r may see the status's details and stop the cluster.
func (r Role) IsAdmin() bool { return r >= RoleAdmin }

// ParseRole reads a role name: read, readwrite or admin.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames[1:] {
		if s == n {
			return Role(i + 1), nil
		}
	}
	return RoleNone, fmt.Errorf("role %s: expected read, readwrite or admin", roleHint(s))
}

// roleHint shows an unknown role as typed when it may be a misspelt role
// (a short word of letters), else only its length: a password written in
// its place is never echoed (a review).
func roleHint(s string) string {
	if len(s) > 10 || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsLetter(r) }) >= 0 {
		return fmt.Sprintf("(%d characters)", len(s))
	}
	return fmt.Sprintf("%q", s)
}

// MaxPassword is the longest password bcrypt reads (72 bytes).
const MaxPassword = 72

// MaxUserName is the longest user name.
const MaxUserName = 64

// DefaultCost is the bcrypt cost HashPassword uses: 2^11 rounds, about
// 0.2 s per check on one core here. Each process checks a user's
// password once, then from its cache; guessing online is throttled, and
// offline (from a stolen config file) costs that much per guess. Hashes
// of any cost made elsewhere are accepted.
const DefaultCost = 11

// User is one "user <name> <role> <password-hash>" line.
type User struct {
	Name string
	Role Role
	Hash string // bcrypt
}

// Line is u as a config line.
func (u User) Line() string { return "user " + u.Name + " " + u.Role.String() + " " + u.Hash }

// ErrPasswordTooLong: bcrypt reads only the first 72 bytes of a password.
var ErrPasswordTooLong = fmt.Errorf("password longer than %d bytes", MaxPassword)

// HashPassword returns the bcrypt hash of password at cost (0: DefaultCost).
func HashPassword(password []byte, cost int) (string, error) {
	if len(password) == 0 {
		return "", errors.New("empty password")
	}
	if len(password) > MaxPassword {
		return "", ErrPasswordTooLong
	}
	if cost == 0 {
		cost = DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}

// ValidName checks a user name: 1 to 64 letters, digits and ._@-.
func ValidName(name string) error {
	if name == "" || len(name) > MaxUserName {
		return fmt.Errorf("user name must have 1 to %d characters", MaxUserName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._@-", r)) {
			return fmt.Errorf("user name %q: only letters, digits and . _ @ - are allowed", name)
		}
	}
	return nil
}

// ParseUser reads the fields of a user line after "user": name, role and
// password hash. Its errors never show more of the hash than its
// algorithm and cost ("$2a$12$…").
func ParseUser(fields []string) (User, error) {
	if len(fields) != 3 {
		return User{}, fmt.Errorf("expected \"user <name> <read|readwrite|admin> <password-hash>\", got %d fields after \"user\" (make a hash with bin/coord -hash-password)", len(fields))
	}
	u := User{Name: fields[0], Hash: fields[2]}
	// A hash in the name's or the role's place (the fields swapped) is
	// never echoed whole (a review saw it in the role's error).
	for i, what := range []string{"user name", "role"} {
		if bcryptPrefix.MatchString(fields[i]) {
			return User{}, fmt.Errorf("%s %s looks like a password hash: the line is \"user <name> <read|readwrite|admin> <password-hash>\"", what, hashHint(fields[i]))
		}
	}
	if err := ValidName(u.Name); err != nil {
		return User{}, err
	}
	var err error
	if u.Role, err = ParseRole(fields[1]); err != nil {
		return User{}, fmt.Errorf("user %s: %w", u.Name, err)
	}
	if _, err := bcrypt.Cost([]byte(u.Hash)); err != nil || len(u.Hash) != 60 {
		return User{}, fmt.Errorf("user %s: password hash %s is not a bcrypt hash (make one with bin/coord -hash-password)", u.Name, hashHint(u.Hash))
	}
	return u, nil
}

// bcryptPrefix is a bcrypt hash's algorithm and cost: "$2a$12$".
var bcryptPrefix = regexp.MustCompile(`^\$2[abxy]?\$[0-9][0-9]\$`)

// hashHint shows what can be shown of a hash: its algorithm and cost.
// Of anything else (a password written where its hash goes) it shows
// only the length.
func hashHint(h string) string {
	p := bcryptPrefix.FindString(h)
	if p == "" {
		return fmt.Sprintf("(%d characters, not starting like a bcrypt hash)", len(h))
	}
	return fmt.Sprintf("%q", p+"…")
}

// Table is a set of users by name.
type Table struct {
	users map[string]User
	order []string
}

// NewTable builds a table; a name given twice is an error.
func NewTable(users []User) (*Table, error) {
	t := &Table{users: make(map[string]User, len(users))}
	for _, u := range users {
		if _, dup := t.users[u.Name]; dup {
			return nil, fmt.Errorf("user %s is defined twice", u.Name)
		}
		t.users[u.Name] = u
		t.order = append(t.order, u.Name)
	}
	return t, nil
}

// Len is the number of users (0 for a nil table: no authentication).
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.users)
}

// Lookup returns the user named name.
func (t *Table) Lookup(name string) (User, bool) {
	if t == nil {
		return User{}, false
	}
	u, ok := t.users[name]
	return u, ok
}

// Users returns the users in the order they were given.
func (t *Table) Users() []User {
	if t == nil {
		return nil
	}
	out := make([]User, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, t.users[n])
	}
	return out
}

// Encode is the table as user lines, one per line: what the coordinator
// hands a server it spawns (DecodeTable reads it back).
func (t *Table) Encode() string {
	var b strings.Builder
	for _, u := range t.Users() {
		b.WriteString(u.Line())
		b.WriteByte('\n')
	}
	return b.String()
}

// DecodeTable reads user lines (Encode); blank lines are skipped.
func DecodeTable(s string) (*Table, error) {
	var users []User
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] != "user" {
			return nil, fmt.Errorf("users line %d: expected \"user …\"", i+1)
		}
		u, err := ParseUser(f[1:])
		if err != nil {
			return nil, fmt.Errorf("users line %d: %w", i+1, err)
		}
		users = append(users, u)
	}
	return NewTable(users)
}
