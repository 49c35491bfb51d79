/*
 * Test-only stand-in for Steam's 32-bit client library (bin/steamclient.so
 * in the dedicated server install). The stand-in server dlopen()s it through
 * ~/.steam/sdk32/steamclient.so, as the real server does, and looks up the
 * one entry point every Steam library exports.
 */
void *CreateInterface(const char *name, int *code);

void *CreateInterface(const char *name, int *code)
{
    (void)name;
    if (code)
        *code = 1;
    return 0;
}
