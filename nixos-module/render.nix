# Renders the canonical integration files dist/*.in, the same sources
# Debian's dist/render uses, so the unit's sandbox cannot drift between the
# two distributions. Pure builtins on purpose: tests/dist/compare-renderings
# evaluates this file with a bare `nix-instantiate`, where no nixpkgs exists.
#
# Returns { "<file name without .in>" = "<rendered text>"; ... }.
{
  helper,
  health,
  systemctl,
  stateDir,
  user,
  group,
  updateUser,
  healthUser,
  steamcmd,
  distDir ? ../dist,
}:
let
  inherit (builtins)
    attrNames
    elemAt
    filter
    head
    length
    listToAttrs
    readDir
    readFile
    replaceStrings
    split
    stringLength
    substring
    ;

  entries = readDir distDir;

  isTemplate =
    name:
    let
      len = stringLength name;
    in
    entries.${name} == "regular" && len > 3 && substring (len - 3) 3 name == ".in";

  templates = filter isTemplate (attrNames entries);

  substitute =
    replaceStrings
      [
        "@HELPER@"
        "@HEALTH@"
        "@SYSTEMCTL@"
        "@STATE_DIR@"
        "@USER@"
        "@GROUP@"
        "@UPDATE_USER@"
        "@HEALTH_USER@"
        "@STEAMCMD@"
      ]
      [
        helper
        health
        systemctl
        stateDir
        user
        group
        updateUser
        healthUser
        steamcmd
      ];

  # A placeholder nobody substitutes would reach the system as a literal
  # "@SOMETHING@" path; refuse to render instead.
  checked =
    name: text:
    let
      parts = split "(@[A-Z][A-Z_]*@)" text;
    in
    if length parts > 1 then
      throw "nixos-module/render.nix: dist/${name}.in still contains ${head (elemAt parts 1)} after rendering"
    else
      text;

  render =
    file:
    let
      name = substring 0 (stringLength file - 3) file;
    in
    {
      inherit name;
      value = checked name (substitute (readFile (distDir + "/${file}")));
    };
in
if templates == [ ] then
  throw "nixos-module/render.nix: no *.in templates in ${toString distDir}"
else
  listToAttrs (map render templates)
