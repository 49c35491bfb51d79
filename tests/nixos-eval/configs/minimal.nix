# The least a host declares: the module on, one instance, all defaults.
{
  services.left4me = {
    enable = true;
    instances.solo = { };
  };
}
