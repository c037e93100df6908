package app

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Permute moves a command's positional arguments after its flags, so that
// `tcpshake probe HOST -p 80` works as users of hping3 and nmap expect:
// urfave/cli v2 stops parsing flags at the first positional argument.
func Permute(app *cli.App, args []string) []string {
	// Shell completion asks with its flag last, where urfave/cli looks
	// for it.
	if len(args) < 2 || args[len(args)-1] == completionFlag {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	i := 1
	var cmd *cli.Command
	for i < len(args) {
		c := findCommand(cmds, args[i])
		if c == nil {
			break
		}
		cmd = c
		out = append(out, args[i])
		cmds = c.Subcommands
		i++
	}
	if cmd == nil || len(cmd.Subcommands) > 0 {
		return append(out, args[i:]...)
	}
	valued := map[string]bool{}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			valued[n] = !isBool
		}
	}
	var flags, pos []string
	for ; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && valued[name] && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	out = append(out, flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
