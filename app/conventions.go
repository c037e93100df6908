package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is the hidden flag urfave/cli answers with the words that
// may come next (App.EnableBashCompletion); the bash and zsh scripts of
// `tcpshake completion` call it.
const completionFlag = "--generate-bash-completion"

// VersionText is what --version prints: the module version and the VCS
// revision recorded in the build info, and "(devel)" or "unknown" where
// the build recorded none (go run, go test, a build outside a checkout).
func VersionText(info *debug.BuildInfo, ok bool) string {
	version, revision, goVersion := "(devel)", "unknown", "unknown"
	var modified, when string
	if ok && info != nil {
		if v := info.Main.Version; v != "" {
			version = v
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = ", with uncommitted changes"
				}
			}
		}
	}
	rev := "revision " + revision
	if when != "" {
		rev += " of " + when
	}
	return fmt.Sprintf("tcpshake %s (%s%s), built with %s", version, rev, modified, goVersion)
}

// rootAction runs when no command is named: --version, the help page, or an
// unknown command.
func rootAction(c *cli.Context) error {
	if c.Bool("version") {
		info, ok := debug.ReadBuildInfo()
		fmt.Fprintln(c.App.Writer, VersionText(info, ok))
		return nil
	}
	if c.Args().Present() {
		return unknownCommand("", c.Args().First(), c.App.Commands)
	}
	return cli.ShowAppHelp(c)
}

// subcommandAction runs when a command with subcommands (lab) is given none
// or one it does not have.
func subcommandAction(c *cli.Context) error {
	if c.Args().Present() {
		return unknownCommand(strings.TrimPrefix(c.Command.HelpName, c.App.Name+" "), c.Args().First(), c.Command.Subcommands)
	}
	return cli.ShowSubcommandHelp(c)
}

// unknownCommand is the one-line usage error for a command name that is not
// among cmds, the subcommands of parent ("lab"; "" for the top level), with
// the closest name when one is close enough to be a typo.
func unknownCommand(parent, name string, cmds []*cli.Command) error {
	what, help := "command", "tcpshake help"
	if parent != "" {
		what, help = parent+" command", "tcpshake help "+parent
	}
	var names []string
	best, bestDist := "", -1
	for _, c := range cmds {
		if c.Hidden || c.Name == "help" {
			continue
		}
		names = append(names, c.Name)
		for _, n := range c.Names() {
			if d := editDistance(strings.ToLower(name), n); bestDist < 0 || d < bestDist {
				best, bestDist = c.Name, d
			}
		}
	}
	// A typo changes a few letters; "frobnicate" is no "probe".
	if bestDist >= 0 && (bestDist <= 2 || strings.HasPrefix(best, strings.ToLower(name))) && bestDist*2 < len(best)+1 {
		return usagef("unknown %s %q; did you mean %q? (see %s)", what, name, best, help)
	}
	return usagef("unknown %s %q; the %ss are %s (see %s)", what, name, what, strings.Join(names, ", "), help)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// helpCommand is `tcpshake help [COMMAND [SUBCOMMAND]]`: the same page as
// COMMAND --help.
func helpCommand() *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show the help of tcpshake or of a command (tcpshake help lab up)",
		ArgsUsage: "[COMMAND [SUBCOMMAND]]",
		Description: "Without COMMAND, the overview of all commands; `tcpshake help lab up` shows the same page\n" +
			"as `tcpshake lab up --help`. An unknown name is answered in one line, with the closest command when one is near.",
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowAppHelp(c)
			}
			path := []string{c.App.Name}
			cmds := c.App.Commands
			for _, name := range c.Args().Slice() {
				cmd := findCommand(cmds, name)
				if cmd == nil || cmd.Hidden {
					return unknownCommand(strings.Join(path[1:], " "), name, cmds)
				}
				path = append(path, cmd.Name)
				cmds = cmd.Subcommands
			}
			// The page urfave/cli shows for COMMAND --help, from a fresh
			// application so this one is not run twice.
			a := New(c.App.Writer, c.App.ErrWriter)
			return a.RunContext(c.Context, append(path, "--help"))
		},
	}
}

// completionCommand prints a shell completion script.
func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print the shell completion script for bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: "Install it once, for example:\n" +
			"  bash: tcpshake completion bash | sudo tee /etc/bash_completion.d/tcpshake\n" +
			"  zsh:  tcpshake completion zsh > \"${fpath[1]}/_tcpshake\"\n" +
			"  fish: tcpshake completion fish > ~/.config/fish/completions/tcpshake.fish",
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion takes one shell: bash, zsh or fish (got %s)", plural(c.NArg(), "argument"))
			}
			switch sh := c.Args().First(); sh {
			case "bash":
				fmt.Fprint(c.App.Writer, bashCompletion)
			case "zsh":
				fmt.Fprint(c.App.Writer, zshCompletion)
			case "fish":
				s, err := New(c.App.Writer, c.App.ErrWriter).ToFishCompletion()
				if err != nil {
					return fmt.Errorf("completion fish: %w", err)
				}
				fmt.Fprint(c.App.Writer, s)
			default:
				return usagef("completion: unknown shell %q; want bash, zsh or fish", sh)
			}
			return nil
		},
	}
}

// manCommand prints the manual page in roff.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:  "man",
		Usage: "print the manual page (roff): tcpshake man | man -l -",
		Description: "Install it once, for example:\n" +
			"  tcpshake man | sudo tee /usr/local/share/man/man1/tcpshake.1 >/dev/null",
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("man takes no arguments (got %d)", c.NArg())
			}
			s, err := New(c.App.Writer, c.App.ErrWriter).ToManWithSection(1)
			if err != nil {
				return fmt.Errorf("man: %w", err)
			}
			fmt.Fprint(c.App.Writer, s)
			return nil
		},
	}
}

// bashCompletion is urfave/cli's autocomplete/bash_autocomplete for
// tcpshake: bash asks the program itself for the next words.
const bashCompletion = `# bash completion for tcpshake; generated by tcpshake completion bash
_tcpshake_complete() {
  local cur words cword
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  if declare -F _init_completion >/dev/null 2>&1; then
    _init_completion -n "=:" || return
  else
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
  fi
  words=("${words[@]:0:$cword}")
  local opts
  if [[ "$cur" == "-"* ]]; then
    opts=$("${words[@]}" "$cur" ` + completionFlag + ` 2>/dev/null)
  else
    opts=$("${words[@]}" ` + completionFlag + ` 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _tcpshake_complete tcpshake
`

// zshCompletion is urfave/cli's autocomplete/zsh_autocomplete for
// tcpshake.
const zshCompletion = `#compdef tcpshake
# zsh completion for tcpshake; generated by tcpshake completion zsh
_tcpshake() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} ` + completionFlag + ` 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ` + completionFlag + ` 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
if [[ "$funcstack[1]" = "_tcpshake" ]]; then
  _tcpshake "$@"
else
  compdef _tcpshake tcpshake
fi
`

// checkWritable fails at once when -w FILE or --svg FILE could not be written later: a
// directory that does not exist or refuses us, or a path that is not a
// regular file. The file itself is only written when the run ends; a file
// made here to try is removed again.
func checkWritable(c *cli.Context) error {
	if err := checkWritableFile("-w", c.String("write")); err != nil {
		return err
	}
	return checkWritableFile("--svg", c.String("svg"))
}

// checkWritableFile is checkWritable for one flag's path ("": not given).
func checkWritableFile(flag, path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return usagef("%s %s: not a regular file", flag, path)
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		return f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", flag, err)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s %s: no such directory: %w", flag, path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	f.Close()
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("%s: removing the trial file: %w", flag, err)
	}
	return nil
}

// withWriteCheck runs checkWritable before every command that has -w, so
// the run stops before its first packet.
func withWriteCheck(cmds []*cli.Command) {
	for _, c := range cmds {
		withWriteCheck(c.Subcommands)
		if !hasFlag(c, "write") && !hasFlag(c, "svg") {
			continue
		}
		before := c.Before
		c.Before = func(ctx *cli.Context) error {
			if err := checkWritable(ctx); err != nil {
				return err
			}
			if before != nil {
				return before(ctx)
			}
			return nil
		}
	}
}

func hasFlag(c *cli.Command, name string) bool {
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}
