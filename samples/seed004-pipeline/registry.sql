-- registry.sql - seed 004's device registry: what the devices do not send.
create table devices (
    id    text primary key,
    make  text not null,
    model text not null,
    site  text not null,
    owner text
);
begin;
insert into devices values ('device-0', 'Acme', 'Thermo-1', 'north', 'team-0');
insert into devices values ('device-1', 'Acme', 'Thermo-2', 'south', 'team-1');
insert into devices values ('device-2', 'Bolt', 'Edge-9', 'east', 'team-2');
insert into devices values ('device-3', 'Corvid', 'Sense-S', 'north', 'team-0');
insert into devices values ('device-4', 'Acme', 'Thermo-1', 'south', NULL);
insert into devices values ('device-5', 'Acme', 'Thermo-2', 'east', 'team-2');
insert into devices values ('device-6', 'Bolt', 'Edge-9', 'north', 'team-0');
insert into devices values ('device-7', 'Corvid', 'Sense-S', 'south', 'team-1');
insert into devices values ('device-8', 'Acme', 'Thermo-1', 'east', 'team-2');
insert into devices values ('device-9', 'Acme', 'Thermo-2', 'north', NULL);
insert into devices values ('device-10', 'Bolt', 'Edge-9', 'south', 'team-1');
insert into devices values ('device-11', 'Corvid', 'Sense-S', 'east', 'team-2');
commit;
