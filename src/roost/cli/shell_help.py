"""The shell's help texts (`/?`, `/? set`, `/? show`, `/? shortcuts`), after Ollama's."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from roost.cli.shell import Shell

USAGE = """\
Available Commands:
  /set            Set session variables
  /show           Show model information
  /load <model>   Load a session or model
  /save <model>   Save your current session
  /clear          Clear session context
  /list           List models in the store
  /bye, /exit     Exit
  /?, /help       Help for a command
  /? shortcuts    Help for keyboard shortcuts

Use \"\"\" to begin a multi-line message.
"""

USAGE_SET = """\
Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set history           Enable history
  /set nohistory         Disable history
  /set wordwrap          Enable wordwrap
  /set nowordwrap        Disable wordwrap
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think [level]     Enable thinking (level: low, medium, high or max)
  /set nothink           Disable thinking
"""

USAGE_SHOW = """\
Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""

USAGE_SHORTCUTS = """\
Available keyboard shortcuts:
  Ctrl + a            Move to the beginning of the line (Home)
  Ctrl + e            Move to the end of the line (End)
   Alt + b            Move back (left) one word
   Alt + f            Move forward (right) one word
  Ctrl + k            Delete the sentence after the cursor
  Ctrl + u            Delete the sentence before the cursor
  Ctrl + w            Delete the word before the cursor
  Up, Down            Earlier and later messages
  Ctrl + r            Search the history
   Alt + Enter        Start a new line in this message

  Ctrl + l            Clear the screen
  Ctrl + g            Open the editor (ROOST_EDITOR, $EDITOR) on this message
  Ctrl + c            Stop the model from responding
  Ctrl + d            Exit roost (/bye)
"""

USAGE_PARAMETERS = """\
Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter num_gpu <int>          The number of layers to send to the GPU
  /set parameter stop <string> <string> ...   Set the stop parameters
"""

TOPICS = {"set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW,
          "shortcut": USAGE_SHORTCUTS, "shortcuts": USAGE_SHORTCUTS}


def say(text: str) -> None:
    """A help text, with the blank line after it that Ollama prints."""
    print(text)


def cmd_help(shell: Shell, args: list[str], line: str) -> bool:
    if len(args) < 2:
        say(USAGE)
    elif args[1] in TOPICS:
        say(TOPICS[args[1]])
    else:
        print(f"Unknown help topic '{args[1]}'. Type /? for help")
    return False
