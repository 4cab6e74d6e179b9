package cli

// Usage is the text printed by -help.
const Usage = `usage: client -h <coord_host> -p <coord_port> [-f <file>] [-timeout 5s] [COMMAND ARGS...]
       client -h <host:port,host:port,...> [-f <file>] [-timeout 5s] [COMMAND ARGS...]

Talks to the ftkv cluster whose coordinator serves clients on
<coord_host>:<coord_port>, or whose group of coordinators serve clients on
the listed addresses (any that answers will do). With a COMMAND it runs that one command and exits.
Without, it reads commands one per line from -f <file> or stdin; on a
terminal it shows the prompt "ftkv> " with line editing and history
(~/.ftkv_history). Blank lines and lines starting with # are skipped.

flags:
  -h host       coordinator host (default localhost), or a comma-separated
                list of the coordinators' client addresses host:port,...
                (an entry without a port takes -p's)
  -p port       coordinator client port (required unless -h has the ports)
  -f file       read commands from file ("-": stdin)
  -timeout d    deadline for reaching the coordinator and for each command,
                e.g. 500ms or 5s (default 5s)
  -user name    authenticate as this user (a cluster with "user" lines); the
                password comes from the environment variable FTKV_PASSWORD,
                or is typed without echo at the terminal. It is never a flag:
                -a (redis-cli's password flag) is refused
  -tls-ca file  speak TLS to a cluster with TLS, trusting this CA (its tls_ca)
  -tls-cert f   with -tls-ca: present this client certificate (optional),
  -tls-key f    with its key
  -help         show this help

` + CommandHelp + `
exit status:
  0  success
  1  G found no value or T mismatched (the answer is still printed)
  2  usage error: bad flag, unknown command, wrong number of arguments,
     bad quoting or escape, key over 64 KiB or value over 1 MiB
  3  the cluster did not answer in time: coordinator unreachable, no answer
     within -timeout, shard unavailable, server error
  4  refused: authentication failed (no -user for a cluster with users, an
     unknown user, a wrong password, too many failed attempts), or the
     user's role does not allow the command (a read user writing, shutdown
     by a non-admin)
  Reading commands from stdin or -f, every error is reported as one line
  "error: <file>:<line>: <problem>" on stderr and the next line is run; the
  exit status is 0 if no command failed, else that of the last failure
  ((nil) and MISMATCH are answers, not failures). At a terminal it is 0.

examples:
  client -h localhost -p 7000 P greeting 'hello world'
  client -h localhost -p 7000 G greeting
  client -h localhost -p 7000 T counter '(nil)' 1
  client -h localhost -p 7000 status --json
  client -h h1:7000,h2:7010,h3:7020 status
  FTKV_PASSWORD=... client -h localhost -p 7000 -user alice G greeting
  printf 'P "a b" "x\\0y"\nG "a b"\n' | client -h localhost -p 7000
`

// CommandHelp lists the commands; the help command prints it.
const CommandHelp = `commands (names are case-insensitive):
  P key value        put                                 -> OK
  G key              get                                 -> the value, or (nil)
  D key              delete                              -> OK
  T key old new      test-and-set: set to new only if    -> OK, or
                     the value is old; old = (nil)          MISMATCH <current value or (nil)>
                     unquoted: only if the key is absent
  A key value        append (creates the key)            -> OK
  status [--json]    the cluster view: a table, or one JSON object
                     (with several coordinators also the term, the
                     leader and each coordinator's role)
  shutdown           stop the whole cluster in order (every server dumps  -> OK
                     its tables; every coordinator exits); accepted
                     from an admin user, or in a cluster without users
                     only from a coordinator's own host
  help               this list
  quit, exit         end the session
  Long names work too: PUT GET DEL DELETE CAS APPEND.

quoting (lines read from stdin, -f or the prompt):
  Double-quote keys and values that contain blanks. Inside quotes
  \" \\ \n \t \r \0 and \xHH (any byte) are escapes; "(nil)" in quotes is
  the literal 5-byte string. Unquoted words are taken literally.
  On the command line the shell has already split the words: there is no
  quoting, and (nil) as T's old value always means absent; but the whole
  command given as one argument with blanks in it ('G "a b"') is read as
  a line, quotes and escapes included.
  Values are printed raw, exactly their bytes, followed by a newline.
`
