with

source as (

    select * from {{ source('core', 'customers') }}

),

renamed as (

    select
        customer_id,
        email,
        country

    from source

)

select * from renamed
