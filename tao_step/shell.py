"""Which values survive TAO's command wrappers: they re-read every argument with bash.

The steps hand TAO each value as its own argv element, without a shell. TAO's wrapper then
builds a command line of its own (tao_tensorflow1_backend@d73dcfc,
``nvidia_tao_tf1/cv/common/entrypoint/entrypoint.py``, ``launch_job`` and
``format_command_line_args``; tao_deploy@a285787, the same in
``nvidia_tao_deploy/cv/common/entrypoint/entrypoint_proto.py``, unchanged up to
2a988a0): it parses its argv with argparse, joins ``--<dest> <value> `` for every option
that is not None or "" unquoted, puts the result into ``bash -c '<env> python <script>
<options>'`` and runs ``shlex.split`` of that string. So ``'`` in a value ends the quoting
(shlex fails with "No closing quotation", or the command is cut apart), and bash then reads
every value as shell text: it splits, expands, runs. TAO 3.0's wrapper is not published;
the 5.0 code is its descendant, so 3.0 is held to the same rule.

A value reaching a wrapper is accepted only when it is made of characters bash passes
unchanged wherever they stand in such an argument (an allow-list: anything not listed is
refused, whatever bash would make of it). The tests run the wrapper's string through the
real bash to show each character arrives unchanged.

Runs inside the TAO images (Python 3.6) and on the host: standard library only.
"""

import string

# Letters and digits: ASCII only. Bash reads a word's other characters by the locale, and
# no TAO path or key needs them; the rule stays checkable by eye.
# _ . / -  never special in a word.
# + @      special only before "(" (extglob patterns), which is refused.
# ,        special only inside {a,b} (brace expansion), and "{" is refused.
# = :      a word after the command name is an argument, not an assignment; bash still
#          expands a "~" after them in an argument that looks like one (a=~/x), and "~" is
#          refused.
# %        special only in ${x%y} ("$" is refused) and as a job (%1) in a command's place,
#          where a value never stands.
SAFE = frozenset(string.ascii_letters + string.digits + "_./-+@,=:%")
SAFE_TEXT = "letters, digits and _ . / - + @ , = : %"

# What bash would do with the characters it reads, for the message.
EFFECTS = (
    (" \t", "split the value into two arguments"),
    (";&|", "end TAO's command there and run the rest as another command"),
    ("`$", "replace it with a command's output or a variable's value"),
    ("'", "end the wrapper's own quoting: the wrapper crashes or cuts its command apart"),
    ("\"\\", "remove it as a quote or escape"),
    ("*?[]", "replace the value with the file names it matches, if any"),
    ("{}", "expand a{b,c} into two arguments"),
    ("~", "replace it with a home folder at the start of a word or after = or :"),
    ("#", "drop the rest of the command as a comment, when it starts a word"),
    ("<>", "redirect TAO's input or output to a file"),
    ("()", "fail on a syntax error, or run a subshell"),
    ("!^", "read it as an operator in some bash settings (negation, history, patterns)"),
)


def unsafe_character(text):
    """The first character of ``text`` bash might change, or None."""
    for character in text:
        if character not in SAFE:
            return character
    return None


def effect(character):
    """What bash would do with ``character``, in a few words."""
    for characters, what in EFFECTS:
        if character in characters:
            return what
    if ord(character) > 127:
        return "read it by the container's locale (only ASCII letters are accepted)"
    return "read it as something other than text"


def bash_problem(name, text, secret=False):
    """Why TAO's wrapper would not pass ``text``, the value of parameter ``name``, through
    bash unchanged: one line naming the character and its effect, or None. A ``secret``
    value (the key) is neither quoted nor is its character shown."""
    character = unsafe_character(text)
    if character is None:
        return None
    if secret:
        return ("%s: the key contains a character that bash would change: TAO's wrapper runs "
                "every argument through bash, which would %s (a key Secret does not avoid "
                "this: the key still reaches the wrapper). Use a key of %s only"
                % (name, effect(character), SAFE_TEXT))
    return ('%s: "%s" contains %r (U+%04X): TAO\'s wrapper runs every argument through bash, '
            "which would %s. Use only %s"
            % (name, text, character, ord(character), effect(character), SAFE_TEXT))
