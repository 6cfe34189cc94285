#ifndef TELEM_CMD_H
#define TELEM_CMD_H
int cmd_placeholder(int argc, char **argv);
#endif
